# Distilled CDS on CIFAR-100 (paper §5): a ResNet-18 CDS student learns from a
# ResNet-50 CDS teacher's logits (KD, T=3 as in the authors' CIFAR code, here
# with the T^2 factor they leave out) and from its four CDS heads (head-to-head
# matching, 512 -> 2048 linear adapters, weight 0.1 each; the squared distance
# averaged over samples, where the authors take one un-squared norm over the
# whole batch: docs/differences.md). The teacher stays frozen in eval mode.
# model.mode='off' gives plain KD. Teacher first:   python tools/train.py
# configs/cds_classification/resnet50_cds_1xb128_cifar100.py   python
# tools/export_plain.py
# configs/cds_classification/resnet50_cds_1xb128_cifar100.py \
# work_dirs/resnet50_cds_1xb128_cifar100/epoch_300.pth \       --out-dir
# work_dirs/resnet50_cds_1xb128_cifar100/export
_base_ = '../cds_classification/resnet18_cds_1xb128_cifar100.py'

teacher_dir = 'work_dirs/resnet50_cds_1xb128_cifar100/export'
model = dict(
    type='DistilledCDSClassifier',
    teacher='configs/cds_classification/resnet50_cds_1xb128_cifar100.py',
    teacher_ckpt=f'{teacher_dir}/plain.pth',
    teacher_heads_ckpt=f'{teacher_dir}/heads.pth',
    kd_loss=dict(type='KDLoss', temperature=3.0, loss_weight=1.0),
    embed_weight=0.1)
