from setuptools import find_packages, setup

setup(
    name='cds_mm',
    version='0.1.0',
    description='Contrastive Deep Supervision (ECCV 2022) for mmpretrain classifiers and mmdet detectors',
    packages=find_packages(include=['cds_mm', 'cds_mm.*']),
    python_requires='>=3.9',
    install_requires=['mmengine>=0.10.7', 'mmdet>=3.3.0', 'mmpretrain>=1.2.0'],
)
