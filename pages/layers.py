"""Layers, step 3 of the wizard: which blocks of the backbone learn and which stay frozen.

Presets cover the usual recipes (feature extraction, fine-tuning the top blocks, full
fine-tuning, training from scratch); ticking blocks in the table makes a custom plan.
The strip and the cost panel show what the plan means before anything trains.
"""

import streamlit as st

from tl_core.models.backbones import get_backbone
from ui import backbone_view, layers_view, shell, state, wizard
from ui.errors import user_errors

shell.ensure_app()

st.title("Layers", anchor=False)
st.markdown(
    "The backbone is a stack of **blocks**, from the input image to the features the new "
    "head reads. **Frozen** blocks keep their weights; **trainable** blocks adjust them to "
    "your images. Blocks near the input see edges and textures that suit any picture, "
    "blocks near the output see whole objects, so those are the first worth training."
)

report, choice = backbone_view.resolve_model_choice()
spec = get_backbone(choice.backbone)

blocks = []
with user_errors():
    blocks = layers_view.load_blocks(spec, choice.image_size)
# Without blocks the page has said why; it ends there (not with st.stop, so that the
# sidebar is still drawn).
if blocks:
    state.mark_layers_seen()
    trainable = choice.trainable([block.name for block in blocks])

    st.caption(
        f"{spec.keras_name} at {choice.image_size} px · {len(blocks)} blocks · "
        f"{sum(block.params for block in blocks):,} parameters · weights: "
        f"{backbone_view.WEIGHTS_LABELS[choice.weights_source]}"
    )
    layers_view.pick_preset(choice, blocks)
    layers_view.warn_about_random_frozen_blocks(choice, blocks, trainable)
    layers_view.render_strip(blocks, trainable)
    with user_errors():
        layers_view.render_cost(choice, blocks, trainable, report)

    table_col, detail_col = st.columns([3, 2], gap="large")
    with table_col:
        st.subheader("Blocks, input side first", anchor=False)
        ticked = layers_view.block_table(blocks, trainable)
        if ticked != set(trainable):
            # A changed tick box makes the plan custom; rerun so the preset and strip say so.
            state.set_custom_blocks([block.name for block in blocks if block.name in ticked])
            st.rerun()
    with detail_col:
        st.subheader("Layers of a block", anchor=False)
        layers_view.render_block_layers(blocks)

    layers_view.render_batchnorm_note(choice)
wizard.next_step_link("pages/layers.py")
