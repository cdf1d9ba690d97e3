"""Templates for ``specforge new``, shipped as package data, and the code that renders them.

Template files end in ``.tmpl`` (so linters and pytest leave them alone) and hold ``{{key}}``
placeholders; a path component ``PACKAGE`` becomes the import package name.
"""
