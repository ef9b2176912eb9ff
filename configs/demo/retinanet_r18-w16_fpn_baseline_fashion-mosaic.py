# The paper's second detector at CPU scale: RetinaNet with the mosaic demo's
# backbone (ResNet-18 at 1/4 width) on the Fashion-MNIST mosaic, same data,
# recipe and schedule as faster-rcnn_r18-w16_fpn_cds_fashion-mosaic.py, no
# CDS term (model.mode='off'; the wrapper keeps the code path of the Faster
# R-CNN runs). Its CDS-pretrained twin:
# retinanet_r18-w16_fpn_cds-pretrained_fashion-mosaic.py.
_base_ = './faster-rcnn_r18-w16_fpn_cds_fashion-mosaic.py'

model = dict(
    mode='off',
    cds_head=None,
    instance_head=None,
    detector=dict(
        _delete_=True,
        type='RetinaNet',
        data_preprocessor=_base_.detector.data_preprocessor,
        backbone=_base_.detector.backbone,
        # C3-C5 and two extra levels: strides 8-128 for 24-64 px items
        neck=dict(
            type='FPN',
            in_channels=[16, 32, 64, 128],
            out_channels=32,
            start_level=1,
            add_extra_convs='on_input',
            num_outs=5),
        bbox_head=dict(
            type='RetinaHead',
            num_classes=10,
            in_channels=32,
            stacked_convs=2,
            feat_channels=32,
            anchor_generator=dict(
                type='AnchorGenerator',
                octave_base_scale=4,
                scales_per_octave=3,
                ratios=[0.5, 1.0, 2.0],
                strides=[8, 16, 32, 64, 128]),
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder',
                target_means=[.0, .0, .0, .0],
                target_stds=[1.0, 1.0, 1.0, 1.0]),
            loss_cls=dict(
                type='FocalLoss',
                use_sigmoid=True,
                gamma=2.0,
                alpha=0.25,
                loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        train_cfg=dict(
            assigner=dict(
                type='MaxIoUAssigner',
                pos_iou_thr=0.5,
                neg_iou_thr=0.4,
                min_pos_iou=0,
                ignore_iof_thr=-1),
            sampler=dict(type='PseudoSampler'),
            allowed_border=-1,
            pos_weight=-1,
            debug=False),
        test_cfg=dict(
            nms_pre=1000,
            min_bbox_size=0,
            score_thr=0.05,
            nms=dict(type='nms', iou_threshold=0.5),
            max_per_img=100)))
