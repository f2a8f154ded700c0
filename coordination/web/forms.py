"""The pages' forms. Every form sent with POST carries a CSRF token (Flask-WTF); the report
form is a GET form (it changes nothing) and has none."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    DateField,
    HiddenField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

COMMENT_MAX = 4000  # as the API allows


def no_nul(form, field) -> None:
    """PostgreSQL text cannot hold NUL characters: refuse them at the edge."""
    if isinstance(field.data, str) and "\x00" in field.data:
        raise ValidationError(_l("Teksten indeholder ugyldige tegn."))


class LoginForm(FlaskForm):
    token = PasswordField(
        _l("Adgangsnøgle (API-token)"),
        validators=[InputRequired(_l("Skriv din adgangsnøgle.")), Length(max=200), no_nul],
    )
    name = StringField(_l("Dit navn (valgfrit)"), validators=[Optional(), Length(max=300), no_nul])


class LanguageForm(FlaskForm):
    lang = HiddenField(validators=[InputRequired(), Length(max=5)])
    next = HiddenField(validators=[Optional(), Length(max=2000)])


class FlagActionForm(FlaskForm):
    """Acknowledge or resolve one flag, with a comment (the view asks for one, as the API does)."""

    action = HiddenField(validators=[InputRequired(), Length(max=20)])
    comment = TextAreaField(
        _l("Kommentar"), validators=[Optional(), Length(max=COMMENT_MAX), no_nul]
    )


class PlannedVisitForm(FlaskForm):
    date = DateField(_l("Dato"), validators=[DataRequired(_l("Angiv en gyldig dato."))])
    purpose = StringField(_l("Formål"), validators=[Optional(), Length(max=500), no_nul])


REASON_MAX = 4000  # as the API allows


def reason_field() -> StringField:
    """Why a coordinator decides on an identity: required, as in the API; kept with it."""
    return StringField(
        _l("Begrundelse"),
        validators=[
            DataRequired(_l("Skriv en begrundelse for beslutningen.")),
            Length(max=REASON_MAX),
            no_nul,
        ],
    )


class ReviewDecisionForm(FlaskForm):
    """A coordinator's decision on a match proposal (accept, reject) or an undo."""

    reason = reason_field()


class MergeForm(FlaskForm):
    company_id = StringField(
        _l("Virksomhed der lægges sammen (id)"),
        validators=[InputRequired(), Length(max=12)],
    )
    into_company_id = StringField(
        _l("Lægges sammen med (id)"), validators=[InputRequired(), Length(max=12)]
    )
    reason = reason_field()


class ReportForm(FlaskForm):
    class Meta:
        csrf = False  # a GET form: it only reads

    area = SelectField(_l("Område"), default="rar-oestjylland", validate_choice=True)
    date_from = DateField(_l("Fra"), name="from", validators=[Optional()])
    date_to = DateField(_l("Til"), name="to", validators=[Optional()])
    group_by = SelectField(_l("Gruppér efter"), default="sector", validate_choice=True)


class StartSyncForm(FlaskForm):
    """Start a sync run of every source (the form holds only its CSRF token)."""
