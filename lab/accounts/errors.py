"""Error codes of accounts: registration, sign-in, API tokens and My Account changes.

Their HTTP statuses are mapped in api/errors.py; the values are the API's public `code` strings.
"""

from __future__ import annotations

from enum import StrEnum


class AccountError(StrEnum):
    UNDER_MINIMUM_AGE = "under_minimum_age"  # COPPA: refused before anything about the person is stored
    POLICY_VERSION_MISMATCH = (
        "policy_version_mismatch"  # accepted a privacy policy that is not the current one
    )
    WEAK_PASSWORD = "weak_password"
    EMAIL_TAKEN = "email_taken"
    WRONG_PASSWORD = "wrong_password"  # the current password, re-asked for a change or an erasure, is wrong
    SIGN_IN_LOCKED = "sign_in_locked"  # too many failures for the account or the address (details: retry)
    SIGN_IN_UNAVAILABLE = (
        "sign_in_unavailable"  # the failure counters' cache is down, so sign-ins fail closed
    )
    STAFF_TOKENS_NOT_ISSUED = "staff_tokens_not_issued"  # staff work on /lab/ with a session, never a token
    # My Account (GET/PATCH me) is the customers': a lab admin keeps staff accounts in the lab admin.
    STAFF_ACCOUNT_NOT_A_CUSTOMER = "staff_account_not_a_customer"
    # The account's password or status was changed in the database, not by the lab (lab/accounts/seal.py).
    ACCOUNT_CHANGED_OUTSIDE_THE_LAB = "account_changed_outside_the_lab"
    TOKEN_NOT_FOUND = "token_not_found"
    # The account was erased while this request was on its way (lab/accounts/erased.py).
    ACCOUNT_ERASED = "account_erased"
    # The password (or the account's status) changed between the sign-in's check and the token's issue.
    PASSWORD_CHANGED_MEANWHILE = "password_changed_meanwhile"
    # My Account's e-mail change: the token mailed to the new address is wrong, was used, or was voided by a
    # later password or e-mail change (or no new address waits); or it is older than LAB_EMAIL_CONFIRM_HOURS.
    EMAIL_CONFIRMATION_INVALID = "email_confirmation_invalid"
    EMAIL_CONFIRMATION_EXPIRED = "email_confirmation_expired"
