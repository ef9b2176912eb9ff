# A detector gains CDS by config alone: the _base_ line, the wrapper and the
# head's taps and channels. (FCOS's own train pipeline is reused as is.)
_base_ = [
    'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py',
    '../_base_/cds/det_contrast_view.py',
]
custom_imports = dict(imports=['cds_mm'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='CDSDetector',
    detector=_base_.model,
    cds_head=dict(
        type='CDSHead',
        taps=['neck.fpn_convs.0', 'neck.fpn_convs.1', 'neck.fpn_convs.2'],
        in_channels=[256, 256, 256],
        projector=dict(type='MLPProjector', num_convs=1, hid_channels=256,
                       out_channels=128),
        use_labels=False))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=_base_.backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='MultiBranch', branch_field=['main', 'cds'],
         main=[dict(type='PackDetInputs')],
         cds=_base_.contrast_view + [dict(type='PackDetInputs')]),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
