"""The part of mmengine's data set API that a wrapper passes through to the data set it wraps."""


class DatasetWrapper:
    """Forwards ``metainfo``, ``full_init``, ``get_data_info``, ``len`` and every other
    attribute (samplers' ``get_cat_ids``, flag arrays, ...) to ``self.dataset``; subclasses
    set ``self.dataset`` and define ``__getitem__``."""

    @property
    def metainfo(self) -> dict:
        return getattr(self.dataset, 'metainfo', {})

    def full_init(self) -> None:
        if hasattr(self.dataset, 'full_init'):
            self.dataset.full_init()

    def get_data_info(self, index: int) -> dict:
        return self.dataset.get_data_info(index)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name):
        # Never 'dataset' itself, which does not exist yet while a worker unpickles the wrapper.
        if name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)
