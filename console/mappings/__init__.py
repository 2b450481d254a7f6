"""The mapping editor's work behind the pages (console/pages/mappings.py): what each entity maps
(`entities`), the fields both systems offer (`fields`), a user's draft and its validation
(`draft`), YAML edits that keep comments (`yaml_edit`) and the saved versions (`history`)."""
