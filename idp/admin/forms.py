"""Admin forms (Flask-WTF: every POST carries a CSRF token)."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import (BooleanField, DateField, HiddenField, IntegerField, PasswordField, RadioField,
                     SelectMultipleField, StringField, SubmitField)
from wtforms.validators import DataRequired, EqualTo, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from idp.forms import Form, NewPasswordForm


class UserSecurityForm(Form):
    """The user page's Security section.

    ``require_2fa`` is the user's own requirement (independent of the organization's);
    ``exempt`` waives 2FA for the user, until ``exempt_until`` (inclusive) if given.
    Neither ticked: the user follows the organization.
    """

    require_2fa = BooleanField(_l("Require two-factor authentication"))
    exempt = BooleanField(_l("Exempt from two-factor authentication"))
    exempt_until = DateField(_l("Exempt until (optional)"), validators=[Optional()])
    exempt_reason = StringField(_l("Reason for the exemption"), validators=[Optional(), Length(max=500)])
    #: The setting the page was shown with (policy.settings.requirement_version): another admin's
    #: change made since is not undone unseen.
    seen = HiddenField(label="", validators=[Optional(), Length(max=64)])
    submit = SubmitField(_l("Save"))


class BulkRequirementForm(Form):
    """The users list's "For the selected users: ..." (idp.admin.views.users_requirement).

    The selection is the list's checkboxes, named `user`, each `<id>.<requirement_version>` (the
    setting the row showed): not a field here, since its choices are the page's rows; the view
    reads and checks them itself."""

    mode = RadioField(_l("For the selected users"), choices=[
        ("required", _l("Require two-factor authentication")),
        ("follow", _l("Follow the organization's rule")),
        ("exempt", _l("Waive two-factor authentication")),
    ])  # none chosen: the view's message ("Not a valid choice" says nothing here)
    exempt_until = DateField(_l("Waived until (optional)"), validators=[Optional()])
    exempt_reason = StringField(_l("Reason for the exemption (optional)"), validators=[Optional(), Length(max=500)])
    submit = SubmitField(_l("Apply to the selected users"))


class RequireAllForm(Form):
    """One button: "Require 2FA for everyone" or "Make 2FA optional for everyone"; `on` says which."""

    on = HiddenField(label="")


class _SeenSetting:
    """`seen`: the fingerprint of the organization's setting the form was shown with
    (policy.settings.org_setting_version): another admin's change made since is not undone unseen."""

    seen = HiddenField(label="", validators=[Optional(), Length(max=64)])


class AllowedFactorsForm(_SeenSetting, Form):
    all_factors = BooleanField(_l("Allow every installed factor"))
    factors = SelectMultipleField(_l("Allowed factors"), choices=[], option_widget=CheckboxInput(),
                                  widget=ListWidget(prefix_label=False), validate_choice=True)
    submit = SubmitField(_l("Save allowed factors"))


class GraceForm(_SeenSetting, Form):
    grace_days = IntegerField(_l("Days"), validators=[Optional(), NumberRange(min=0, max=365)])
    grace_logins = IntegerField(_l("Logins"), validators=[Optional(), NumberRange(min=0, max=100)])
    submit = SubmitField(_l("Save grace period"))


class SelfPushRecoveryForm(_SeenSetting, Form):
    """Whether members may restore push on a new phone with their password and an e-mailed code."""

    allowed = BooleanField(_l("Members may restore push approvals on a new phone with their password and a code "
                              "sent to their e-mail address"))
    submit = SubmitField(_l("Save push recovery"))


class ConfirmForm(Form):
    """A destructive action's second step: only the CSRF token and a confirm button."""

    confirm = SubmitField(_l("Confirm"))


class DeleteUserForm(Form):
    """Delete a user: the admin types the user's e-mail address, so that a slip of the mouse on
    the wrong user's page deletes nobody (the view compares it with the user's)."""

    email = StringField(_l("Type the user's e-mail address to confirm"), validators=[DataRequired(), Length(max=320)],
                        render_kw={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "none"})
    submit = SubmitField(_l("Delete this user"))


class NewUserForm(NewPasswordForm):
    """Add a user: the organization is the admin's own; the rules are idp.users.create's.

    `how` (radio buttons the template writes: FIRST_PASSWORD_CHOICES) says how the person gets
    in: an invitation by e-mail (the default) or a first password typed here. The password
    fields are required only for the latter (the view checks: FormField-free, so that a form
    posted without `how`, by a script written before invitations, keeps meaning a password)."""

    password = PasswordField(_l("First password"), validators=[Optional(), Length(max=1024)],
                             render_kw={"autocomplete": "new-password"})
    confirm = PasswordField(_l("First password again"),
                            validators=[EqualTo("password", message=_l("The two passwords differ."))],
                            render_kw={"autocomplete": "new-password"})

    email = StringField(_l("E-mail"), validators=[DataRequired(), Length(max=320)],
                        render_kw={"type": "email", "autocomplete": "off"})
    name = StringField(_l("Name"), validators=[Optional(), Length(max=200)])
    admin = BooleanField(_l("Administrator of the organization"))
    submit = SubmitField(_l("Add the user"))


# How a new user gets in (NewUserForm): the value posted as `how`.
INVITE, FIRST_PASSWORD = "invite", "password"
