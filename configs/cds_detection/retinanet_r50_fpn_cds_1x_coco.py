# RetinaNet R50-FPN, 1x COCO, with image-level CDS on P3-P5.
_base_ = [
    'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
    '../_base_/cds/coco_fpn_cds.py',
]
custom_imports = dict(imports=['cds_mm'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='CDSDetector',
    mode='cds',
    detector=_base_.model,
    cds_head=dict(
        _base_.fpn_cds_head,
        taps=['neck.fpn_convs.0', 'neck.fpn_convs.1', 'neck.fpn_convs.2'],
        in_channels=[256, 256, 256]))
train_dataloader = dict(dataset=dict(pipeline=_base_.cds_train_pipeline))
