"""Database defaults for the job columns 0012 and 0016 added NOT NULL with none (Django drops the default it
adds a column with): through an upgrade, a process of the previous version still inserts jobs (a release)
without naming them, and each of its inserts failed until it was replaced. As 0017 and 0018 do:

- `copies_rejected`: 0, a job nothing rejected yet;
- `title_token`: "", the title of a job made before titles had a token (`lab-job-<id>`), which is the title
  a version before them sends and looks for at the printer. A random token there would name a title no
  such version sends: its job would not be found at the printer by its title.
"""

from django.db import migrations, models

import lab.production.models


class Migration(migrations.Migration):
    dependencies = [
        ("production", "0018_jobevent_failure_code"),
    ]

    operations = [
        migrations.AlterField(
            model_name="printjob",
            name="copies_rejected",
            field=models.PositiveSmallIntegerField(db_default=0, default=0),
        ),
        migrations.AlterField(
            model_name="printjob",
            name="title_token",
            field=models.CharField(
                blank=True, db_default="", default=lab.production.models.new_title_token, max_length=8
            ),
        ),
    ]
