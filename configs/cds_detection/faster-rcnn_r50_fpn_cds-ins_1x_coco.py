# Instance-level CDS (beyond the paper) on top of the image-level one:
# RoIAlign of the ground-truth boxes on P2 and P3 in both views, SupCon over
# the box classes.
_base_ = './faster-rcnn_r50_fpn_cds_1x_coco.py'
model = dict(
    instance_head=dict(
        type='InstanceCDSHead',
        taps=['neck.fpn_convs.0', 'neck.fpn_convs.1'],
        in_channels=[256, 256],
        roi_size=7,
        loss_weight=0.1,
        projector=dict(
            type='MLPProjector', hid_channels=256, out_channels=128),
        loss=dict(type='SupConLoss', temperature=0.07)))
