import hashlib
from pathlib import Path

from django.db import migrations

POLICY = Path(__file__).resolve().parent.parent / "policy" / "privacy-policy-1.0.txt"


def publish(apps, schema_editor):
    PolicyVersion = apps.get_model("accounts", "PolicyVersion")
    text = POLICY.read_text()
    PolicyVersion.objects.get_or_create(
        version="1.0", defaults={"text": text, "sha256": hashlib.sha256(text.encode()).hexdigest()}
    )


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_roles")]
    operations = [migrations.RunPython(publish, migrations.RunPython.noop)]
