"""A customer's data over its life: export (access), erasure, and the retention schedule that purges photos.

Built on everything below it (orders, production, audit, notify, the vault in lab.privacy), which is why it
is its own app above them; lab.privacy keeps the vault itself (data keys, encryption at rest).
"""
