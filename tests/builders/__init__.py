"""The test suite's data builders, all imported from here (`from tests.builders import paid_order, person`).

factory_boy factories for plain rows; anything with a state is built through the lab's own services (orders
paid by the transition service, jobs walked by job_move, photos stored by the intake service), never by
writing a status. By concept: people, orders (catalog, photos, orders, API bodies), production (printers,
jobs, what a refused action must leave unchanged), customers (a customer's journey through the API, for the
privacy tests), audit (records at chosen times).
"""

from tests.builders.audit import T0, attempt, audit_write, denied, minutes, preview_entry, shipped_order
from tests.builders.customers import (
    PERSON,
    PERSON_PASSWORD,
    SKU,
    Person,
    blob_path,
    database_text,
    minilab,
    pack_and_ship,
    pay,
    place_order,
    print_order,
    register,
    upload,
)
from tests.builders.orders import (
    ADDRESS,
    PHOTO_300_DPI,
    SHIPPING_ADDRESS,
    TO_PACKED,
    ProductFactory,
    asset_for,
    order_body,
    order_for,
    order_move,
    order_pay,
    order_with_items,
    paid_order,
)
from tests.builders.people import PASSWORD, UserFactory, client_as, messages_of, new_customer, person
from tests.builders.production import (
    WORKER,
    broker_tasks,
    floor_state,
    hotfolder_printer,
    job_walk,
    printer_folder,
    ready_to_pack_order,
    released_order,
)

__all__ = [
    "ADDRESS",
    "PASSWORD",
    "PERSON",
    "PERSON_PASSWORD",
    "PHOTO_300_DPI",
    "SHIPPING_ADDRESS",
    "SKU",
    "T0",
    "TO_PACKED",
    "WORKER",
    "Person",
    "ProductFactory",
    "UserFactory",
    "asset_for",
    "attempt",
    "audit_write",
    "blob_path",
    "broker_tasks",
    "client_as",
    "database_text",
    "denied",
    "floor_state",
    "hotfolder_printer",
    "job_walk",
    "messages_of",
    "minilab",
    "minutes",
    "new_customer",
    "order_body",
    "order_for",
    "order_move",
    "order_pay",
    "order_with_items",
    "pack_and_ship",
    "paid_order",
    "pay",
    "person",
    "place_order",
    "preview_entry",
    "print_order",
    "printer_folder",
    "ready_to_pack_order",
    "register",
    "released_order",
    "shipped_order",
    "upload",
]
