"""Every product's currency in lower case, as the lab admin, the demo seed and `product_save` now store it.

Before, the demo seed stored LAB_CURRENCY as given ("HUF") and the admin saved "huf": once an admin edited
one product, a basket of it and one not yet edited was 400 `mixed_currency`. Quotes compare codes in any case
now; this makes the stored rows agree too (and the product list and the system check read them as one
currency). A code in another case is the same currency: going backwards changes nothing.
"""

from django.db import migrations
from django.db.models.functions import Lower, Trim


def currency_lower_case(apps, schema_editor):  # type: ignore[no-untyped-def]
    Product = apps.get_model("catalog", "Product")
    spelled = Lower(Trim("currency"))
    Product.objects.exclude(currency=spelled).update(currency=spelled)


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(currency_lower_case, migrations.RunPython.noop, elidable=True),
    ]
