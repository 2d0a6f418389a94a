"""Arguments that models no longer take, accepted with a warning so that old configs still build."""
import functools
import warnings


def drop_deprecated_arguments(**messages: str):
    """Class decorator: ``cls(..., name=value)`` for each ``name`` in ``messages`` warns with its
    message and builds ``cls`` without it. The class's own signature does not list them."""

    def decorate(cls):
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            for name in messages.keys() & kwargs.keys():
                kwargs.pop(name)
                warnings.warn(f'DeprecationWarning: {cls.__name__}({name}=...) {messages[name]}',
                              stacklevel=2)
            init(self, *args, **kwargs)

        cls.__init__ = __init__
        return cls

    return decorate
