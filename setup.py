"""cvt_mm: the CvT backbone for mmpretrain, mmdet and mmsegmentation."""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def read_version():
    namespace = {}
    exec((ROOT / 'cvt_mm' / 'version.py').read_text(), namespace)
    return namespace['__version__']


setup(
    name='cvt_mm',
    version=read_version(),
    description='CvT (Convolutional vision Transformer) backbone for mmpretrain, mmdet and mmseg',
    long_description=(ROOT / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['cvt_mm', 'cvt_mm.*']),
    install_requires=[
        # The versions known to work together on torch 2.14 (see docs/install.md).
        'torch>=2.1',
        'torchvision',
        'mmengine==0.10.7',
        'mmcv>=2.0.0,<2.2.0',  # mmdet 3.3.0 and mmseg 1.2.2 refuse mmcv>=2.2
        'mmdet==3.3.0',
        'mmsegmentation==1.2.2',
        'mmpretrain==1.2.0',
        'numpy<2',  # mmcv 2.1 / mmdet 3.3 / mmpretrain 1.2 predate numpy 2
        'setuptools<81',  # mmengine imports pkg_resources at run time
        'pycocotools',
        'safetensors',
        'ftfy',  # imported by mmseg without being declared
        'regex',  # imported by mmseg without being declared
        'rich',
        'matplotlib',
    ],
    extras_require={
        'tests': [
            'pytest',
            'pytest-xdist',
            # Reference implementation for parity tests; 4.49+ breaks `import mmpretrain.models`.
            'transformers==4.48.3',
        ],
        'docs': ['transformers==4.48.3'],
    },
)
