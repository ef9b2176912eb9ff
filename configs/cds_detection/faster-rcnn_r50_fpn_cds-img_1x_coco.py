_base_ = './faster-rcnn_r50_fpn_cds_1x_coco.py'
