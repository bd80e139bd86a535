"""Views of the staff pages under /lab/: sign-in, the production floor and the packing station.

Views are thin: they check input shapes, call one service, and turn a DomainError into a message.
"""
