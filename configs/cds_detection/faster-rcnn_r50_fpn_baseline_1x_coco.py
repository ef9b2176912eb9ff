# The plain Faster R-CNN on the same data pipeline, for side-by-side tables.
_base_ = './faster-rcnn_r50_fpn_cds_1x_coco.py'
model = dict(mode='off')
