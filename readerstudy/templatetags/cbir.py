"""Small template helpers."""

from django import template

register = template.Library()


@register.filter
def get_item(mapping, key):
    """mapping[key] for keys a template cannot spell (e.g. "precision@5"); '' when absent."""
    if not isinstance(mapping, dict):
        return ""
    value = mapping.get(key)
    return "" if value is None else value
