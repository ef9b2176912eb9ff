# Stage 2 of the CPU-scale CDS-pretrained detector: the mosaic demo's Faster
# R-CNN, trained without any CDS term (model.mode='off'), whose ResNet-18
# starts from the backbone of a Fashion-MNIST classifier trained with CDS
# (stage 1: resnet18-w16_cds_1xb128_fashionmnist-56px.py). Make the file with
#   python tools/train.py \
#       configs/demo/resnet18-w16_cds_1xb128_fashionmnist-56px.py \
#       --work-dir work_dirs/r18-w16_cds_56px
#   python tools/export_plain.py \
#       configs/demo/resnet18-w16_cds_1xb128_fashionmnist-56px.py \
#       work_dirs/r18-w16_cds_56px/best_accuracy_top1_epoch_15.pth \
#       --out-dir work_dirs/r18-w16_cds_56px/export
# which writes backbone.pth (keys 'backbone.*'), then train this config.
# benchmarks/det_pretrained_backbone.py runs the chain and its CE-pretrained
# and from-scratch twins.
_base_ = './faster-rcnn_r18-w16_fpn_cds_fashion-mosaic.py'

model = dict(
    mode='off',
    detector=dict(
        backbone=dict(
            init_cfg=dict(
                _delete_=True,  # the demo's backbone has init_cfg=None
                type='Pretrained',
                prefix='backbone.',
                checkpoint='work_dirs/r18-w16_cds_56px/export/backbone.pth'))))
