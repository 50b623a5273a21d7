"""Backbone, step 2 of the wizard: the pretrained network the new classifier is built on.

Pick one of the registered Keras applications, where its weights come from (ImageNet,
random, or an uploaded file) and the image size. Its block list is prefetched in the
background so that the Layers step opens at once.
"""

import streamlit as st

from tl_core.models.backbones import get_backbone
from ui import backbone_view, shell, state, wizard
from ui.errors import user_errors

shell.ensure_app()

st.title("Backbone", anchor=False)
st.markdown(
    "A **backbone** is a network that has already learned to see: it turns an image into "
    "a few hundred numbers (features) that describe what is in it. Your model is that "
    "backbone plus a small new **head** that maps the features to your classes. "
    "**Pretrained** weights (ImageNet: 1.3 million photos in 1,000 classes) already know "
    "edges, textures and shapes, so a few hundred images of your own can be enough; "
    "**from scratch**, with random weights, it has to learn all of that from your images."
)

_, choice = backbone_view.resolve_model_choice()
spec = get_backbone(choice.backbone)
# Recording the shown default makes the step count as done and puts it into the URL.
state.set_backbone_id(spec.id)

backbone_view.pick_backbone(choice)
backbone_view.render_backbone_table(spec.id)

weights_col, size_col = st.columns(2, gap="medium")
with weights_col.container(border=True, height="stretch"):
    st.markdown(":material/model_training: **Where the weights start**")
    backbone_view.pick_weights(choice, spec)
with size_col.container(border=True, height="stretch"):
    st.markdown(":material/aspect_ratio: **Image size**")
    backbone_view.pick_image_size(choice, spec)

with user_errors():
    backbone_view.prefetch_blocks(spec.id, choice.image_size)
wizard.next_step_link("pages/backbone.py")
