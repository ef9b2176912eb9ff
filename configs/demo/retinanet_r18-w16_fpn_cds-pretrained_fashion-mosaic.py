# retinanet_r18-w16_fpn_baseline_fashion-mosaic.py whose ResNet-18 starts
# from the backbone of a Fashion-MNIST classifier trained with CDS: made as in
# faster-rcnn_r18-w16_fpn_cds-pretrained_fashion-mosaic.py (its header has the
# commands); benchmarks/det_pretrained_backbone.py --detectors retinanet runs
# the chain.
_base_ = './retinanet_r18-w16_fpn_baseline_fashion-mosaic.py'

model = dict(
    detector=dict(
        backbone=dict(
            init_cfg=dict(
                _delete_=True,  # the demo's backbone has init_cfg=None
                type='Pretrained',
                prefix='backbone.',
                checkpoint='work_dirs/r18-w16_cds_56px/export/backbone.pth'))))
