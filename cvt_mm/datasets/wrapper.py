"""The part of mmengine's data set API that a wrapper passes through to the data set it wraps,
and where config helpers put their wrappers in a chain of them."""
from typing import List


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


# Wrappers indexed with the (index, key) pairs of cvt_mm.engine.loops.ResumableBatchSampler:
# they must stay outermost, so that every other wrapper is indexed with plain indices.
POSITION_INDEXED_WRAPPERS = ('SampleSeededDataset', )


def type_name(config: dict) -> str:
    """The ``type`` of a config, as its name also where a class was given."""
    kind = config.get('type')
    return kind if isinstance(kind, str) or kind is None else kind.__name__


def wrapper_chain(dataset_cfg: dict) -> List[dict]:
    """A data set config and the configs it wraps (through ``dataset``), outermost first."""
    chain = [dataset_cfg]
    while isinstance(chain[-1].get('dataset'), dict):
        chain.append(chain[-1]['dataset'])
    return chain


def wrap_inside_position_indexed(loader_cfg: dict, wrapper_type: str) -> dict:
    """The config of the ``wrapper_type`` wrapper in a dataloader's data set chain; when there
    is none, a new one (``dict(type=wrapper_type)``) just inside the
    position-indexed wrappers, whichever order the config's helpers were applied in."""
    chain = wrapper_chain(loader_cfg['dataset'])
    found = next((config for config in chain if type_name(config) == wrapper_type), None)
    if found is not None:
        return found
    depth = 0  # how many position-indexed wrappers lead the chain
    while depth < len(chain) and type_name(chain[depth]) in POSITION_INDEXED_WRAPPERS:
        depth += 1
    holder = chain[depth - 1] if depth else loader_cfg
    holder['dataset'] = dict(type=wrapper_type, dataset=holder['dataset'])
    return holder['dataset']
