# The README's demo: a tiny Faster R-CNN (ResNet-18 at 1/4 width, FPN 32 ch)
# with image-level CDS on P2-P5 and instance-level CDS on P2, trained on the
# generated shapes set (data/shapes, made by tools/dataset_converters/
# make_shapes_coco.py; tools/demo.sh uses 1000 train / 100 val images) at
# 128 px. 1250 iterations of batch 4 with AdamW reach val mAP@50 66 % (seed
# 0); tools/demo.sh runs it all in about 5 minutes on 2 CPU cores.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/cds/contrast_colour.py',
    '../_base_/cds/check_finite_loss.py',
]
custom_imports = dict(
    imports=['cds_mm', 'cds_mm.compat'], allow_failed_imports=False)

detector = _base_.model
detector.backbone = dict(
    type='ResNet',
    depth=18,
    base_channels=16,
    num_stages=4,
    out_indices=(0, 1, 2, 3),
    frozen_stages=-1,
    norm_cfg=dict(type='BN', requires_grad=True),
    norm_eval=False,
    style='pytorch',
    init_cfg=None)
detector.neck.in_channels = [16, 32, 64, 128]
detector.neck.out_channels = 32
detector.rpn_head.in_channels = 32
detector.rpn_head.feat_channels = 32
detector.rpn_head.anchor_generator.scales = [4]
detector.roi_head.bbox_roi_extractor.out_channels = 32
detector.roi_head.bbox_head.in_channels = 32
detector.roi_head.bbox_head.fc_out_channels = 128
detector.roi_head.bbox_head.num_classes = 3
# 1-3 objects an image: fewer proposals and RoIs keep an iteration cheap
detector.train_cfg.rpn_proposal.nms_pre = 200
detector.train_cfg.rpn_proposal.max_per_img = 100
detector.train_cfg.rcnn.sampler.num = 64
detector.test_cfg.rpn.nms_pre = 300
detector.test_cfg.rpn.max_per_img = 100

model = dict(
    _delete_=True,
    type='CDSDetector',
    mode='cds',  # 'off' gives the matching baseline
    detector=detector,
    cds_head=dict(
        type='CDSHead',
        taps=[
            'neck.fpn_convs.0', 'neck.fpn_convs.1', 'neck.fpn_convs.2',
            'neck.fpn_convs.3'
        ],
        loss_weight=0.1,
        projector=dict(
            type='MLPProjector', num_convs=1, hid_channels=64,
            out_channels=32),
        loss=dict(type='SupConLoss', temperature=0.07),
        use_labels=False),
    instance_head=dict(
        type='InstanceCDSHead',
        taps=['neck.fpn_convs.0'],
        roi_size=7,
        loss_weight=0.1,
        projector=dict(type='MLPProjector', hid_channels=64, out_channels=32),
        loss=dict(type='SupConLoss', temperature=0.07)))

# the data folder; CDS_DATA_ROOT=DIR in the environment overrides it
data_root = '{{$CDS_DATA_ROOT:data/shapes}}'
metainfo = dict(classes=('rectangle', 'ellipse', 'triangle'))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='MultiBranch',
        branch_field=['main', 'cds'],
        main=[dict(type='PackDetInputs')],
        cds=_base_.contrast_colour + [dict(type='PackDetInputs')]),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        pipeline=train_pipeline,
        filter_cfg=dict(filter_empty_gt=False, min_size=0)))
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + '/annotations/instances_val.json')
test_evaluator = val_evaluator

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=5, val_interval=2)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# from scratch in few steps: AdamW beat SGD (val mAP@50 13.8 % vs 7.9 %
# after 2000 images) and batch 4 beat batch 8 (14.4 % vs 8.5 % after 1000)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=True, milestones=[4], gamma=0.1),
]
default_hooks = dict(
    checkpoint=dict(interval=1, max_keep_ckpts=2), logger=dict(interval=10))
randomness = dict(seed=0)
# the CDS loss weights ramp up over the learning-rate warm-up (50 iterations)
custom_hooks = _base_.custom_hooks + [
    dict(type='CDSWeightHook', warmup_iters=50)
]
