"""Turn text from outside (file names, class names, error messages) into safe Markdown.

Used by the model card (`tl_core.analysis.export`) and by every page that shows such text.
"""

from __future__ import annotations

import re

# Characters that Streamlit's Markdown gives a meaning to: emphasis, code, links, LaTeX
# ($), tables (|), strikethrough (~), headings (#) and HTML-like brackets. A backslash
# before any of them renders the character itself (CommonMark escapes).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]$~|#<>])")


def escape_markdown(text: str) -> str:
    r"""Return `text` so that Markdown shows it literally.

    Example:
        >>> print(escape_markdown("my_data_v2.zip"))
        my\_data\_v2.zip
    """
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)
