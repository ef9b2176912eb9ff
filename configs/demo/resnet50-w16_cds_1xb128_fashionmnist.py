# CPU-scale distillation teacher: ResNet-50 (CIFAR stem, 1/4 width, 512
# output channels) trained with CDS on Fashion-MNIST, as in
# resnet18-w16_cds_1xb128_fashionmnist.py. Export it with
# tools/export_plain.py for resnet18-w16_distilled-cds_r50-w16_fashionmnist.py.
_base_ = './resnet18-w16_cds_1xb128_fashionmnist.py'

# CDS at the base config's weight, 0.3 (chosen on val for the supervised
# ResNet-18); the 4-epoch results of benchmarks/README.md ran at 0.1
model = dict(
    classifier=dict(backbone=dict(depth=50), head=dict(in_channels=512)))
