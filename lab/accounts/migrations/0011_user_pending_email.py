"""A new e-mail address asked for in My Account waits here until the token mailed to it is confirmed
(lab/accounts/email_change.py); "" when none waits, for every account there is."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0010_emails_in_the_form_their_mail_goes_to'),
    ]

    operations = [
        migrations.AddField(
            model_name='user',
            name='pending_email',
            field=models.EmailField(blank=True, db_default='', default='', max_length=254),
        ),
    ]
