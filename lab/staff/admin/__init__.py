"""The Django admin of lab admins (role `admin`), mounted at /lab/admin/: catalog, printers, staff accounts.

Nothing that holds or points at photo bytes is registered here; the audit gate stays the only way to them.
"""
