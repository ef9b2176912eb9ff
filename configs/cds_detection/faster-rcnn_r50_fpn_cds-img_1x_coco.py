# Image-level CDS on the FPN levels P2-P5 instead of the instance-level head:
# SimCLR between the two views of each image (weight 0.01 per level, negatives
# gathered across GPUs). An option, not the default: on the dense one-class
# set it cost 0.7 test mAP at this weight and 9.3 at 0.1 (3 seeds;
# benchmarks/README.md, "Dense one-class scenes").
_base_ = './faster-rcnn_r50_fpn_cds_1x_coco.py'
model = dict(
    instance_head=None,
    cds_head=dict(
        _base_.fpn_cds_head,
        taps=[
            'neck.fpn_convs.0', 'neck.fpn_convs.1', 'neck.fpn_convs.2',
            'neck.fpn_convs.3'
        ],
        in_channels=[256, 256, 256, 256]))
