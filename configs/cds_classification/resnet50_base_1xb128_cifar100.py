# Deprecated name, kept so that existing commands work; tools/train.py and
# tools/test.py warn. Not listed in metafile.yml. The config is:
_base_ = './resnet50_baseline_1xb128_cifar100.py'
