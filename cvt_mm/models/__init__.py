from .backbones import CvT

__all__ = ['CvT']
