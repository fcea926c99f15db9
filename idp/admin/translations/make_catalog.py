"""Rebuild the admin pages' French catalog: extract, apply FRENCH, write .po and compile .mo.

    .venv/bin/python idp/admin/translations/make_catalog.py

The French follows the vocabulary of the original documentation (docs seeds): "Rendre
obligatoire l'authentification à 2 facteurs pour tous", "Activer l'authentification à
2 facteurs", "Sécurité", "Utilisateurs", and its four shield descriptions.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]

FRENCH = {
    "Require two-factor authentication": "Activer l'authentification à 2 facteurs",
    "Exempt from two-factor authentication": "Exempter de l'authentification à 2 facteurs",
    "Exempt until (optional)": "Exempté jusqu'au (facultatif)",
    "Reason for the exemption": "Motif de l'exemption",
    "Save": "Enregistrer",
    "Allow every installed factor": "Autoriser tous les facteurs installés",
    "Allowed factors": "Facteurs autorisés",
    "Save allowed factors": "Enregistrer les facteurs autorisés",
    "Days": "Jours",
    "Logins": "Connexions",
    "Save grace period": "Enregistrer le délai de grâce",
    "Confirm": "Confirmer",
    "2FA not active": "2FA non active",
    "Two-factor authentication is not active.": "La 2FA n'est pas active.",
    "2FA required, not set up": "2FA obligatoire, non activée",
    "Two-factor authentication has been made mandatory for this user. The user must set it up at their next login.":
        "La 2FA a été rendue obligatoire pour l'utilisateur. L'utilisateur doit activer la 2FA lors de sa "
        "prochaine connexion.",
    "2FA active, set up voluntarily": "2FA active, activée par l'utilisateur",
    "Two-factor authentication is active. The user set it up themselves.":
        "La 2FA est active. L'utilisateur a activé la 2FA lui-même.",
    "2FA active and required": "2FA active et obligatoire",
    "Two-factor authentication is active. It has been made mandatory.":
        "La 2FA est active. La 2FA a été rendue obligatoire.",
    "A user cannot be both required and exempt: choose one.":
        "Un utilisateur ne peut pas être à la fois soumis à l'obligation et exempté : choisissez.",
    "Not saved: %(error)s": "Non enregistré : %(error)s",
    "Saved.": "Enregistré.",
    "Nothing to change.": "Aucune modification.",
    "Two-factor authentication is now required for everyone.":
        "L'authentification à 2 facteurs est désormais obligatoire pour tous.",
    "Two-factor authentication is now optional for everyone.":
        "L'authentification à 2 facteurs est désormais optionnelle pour tous.",
    "Allowed factors saved.": "Facteurs autorisés enregistrés.",
    "Grace period saved.": "Délai de grâce enregistré.",
    "Revoke this second factor?": "Révoquer ce second facteur ?",
    "%(factor)s “%(label)s” of %(email)s will stop working at once.":
        "%(factor)s « %(label)s » de %(email)s cessera de fonctionner immédiatement.",
    "The second factor was revoked.": "Le second facteur a été révoqué.",
    "Reset second factors?": "Réinitialiser les seconds facteurs ?",
    "Every second factor and recovery code of %(email)s will be revoked. If two-factor authentication is required for them, they will have to set it up again at their next login.":
        "Tous les seconds facteurs et codes de récupération de %(email)s seront révoqués. Si la 2FA est "
        "obligatoire pour cet utilisateur, il devra l'activer à nouveau lors de sa prochaine connexion.",
    "Second factors reset: %(n)s revoked.": "Seconds facteurs réinitialisés : %(n)s révoqué(s).",
    "Audit log": "Journal d'audit",
    "User (name or e-mail)": "Utilisateur (nom ou e-mail)",
    "Action": "Action",
    "All actions": "Toutes les actions",
    "Filter": "Filtrer",
    "When (UTC)": "Quand (UTC)",
    "Who": "Qui",
    "For": "Pour",
    "Details": "Détails",
    "Address": "Adresse",
    "No event matches.": "Aucun événement ne correspond.",
    "Pages": "Pages",
    "Newer": "Plus récents",
    "Older": "Plus anciens",
    "Cancel": "Annuler",
    "Administration": "Administration",
    "Users": "Utilisateurs",
    "Security": "Sécurité",
    "Two-factor authentication among your users": "La 2FA parmi vos utilisateurs",
    "Distribution of the %(total)s users over the four 2FA statuses":
        "Répartition des %(total)s utilisateurs entre les quatre statuts de la 2FA",
    "Total": "Total",
    "Two-factor authentication is required for everyone in the organization, except exempt users.":
        "L'authentification à 2 facteurs est obligatoire pour tous les utilisateurs de l'organisation, "
        "sauf les utilisateurs exemptés.",
    "Make 2FA optional for everyone": "Rendre optionnelle l'authentification à 2 facteurs pour tous",
    "If you require it, %(n)s users will have to set up two-factor authentication at their next login; %(exempt)s are exempt.":
        "Si vous la rendez obligatoire, %(n)s utilisateurs devront activer la 2FA lors de leur prochaine "
        "connexion ; %(exempt)s sont exemptés.",
    "Require 2FA for everyone": "Rendre obligatoire l'authentification à 2 facteurs pour tous",
    "Allowed factor types": "Types de facteurs autorisés",
    "No second factor is installed.": "Aucun second facteur n'est installé.",
    "Grace period": "Délai de grâce",
    "A user who has just been required may postpone setting up a second factor for this many days or logins (empty or 0: no grace).":
        "Un utilisateur pour qui la 2FA vient d'être rendue obligatoire peut reporter l'activation d'un second "
        "facteur pendant ce nombre de jours ou de connexions (vide ou 0 : aucun délai).",
    "disabled": "désactivé",
    "exempt": "exempté",
    "Exempt until %(date)s.": "Exempté jusqu'au %(date)s.",
    "Exempt with no end date.": "Exempté sans date de fin.",
    "Reason: %(reason)s": "Motif : %(reason)s",
    "The exemption ended on %(date)s: two-factor authentication is required again.":
        "L'exemption a pris fin le %(date)s : la 2FA est de nouveau obligatoire.",
    "The organization requires two-factor authentication for everyone.":
        "L'organisation a rendu obligatoire l'authentification à 2 facteurs pour tous.",
    "Exemption": "Exemption",
    "Second factors": "Seconds facteurs",
    "Type": "Type",
    "Label": "Libellé",
    "Added": "Ajouté",
    "Last used": "Dernière utilisation",
    "Actions": "Actions",
    "Revoke": "Révoquer",
    "Reset second factors": "Réinitialiser les seconds facteurs",
    "For a lost device: revokes every second factor and recovery code.":
        "En cas d'appareil perdu : révoque tous les seconds facteurs et codes de récupération.",
    "No second factor set up.": "Aucun second facteur activé.",
    "%(unused)s of %(total)s unused": "%(unused)s sur %(total)s non utilisés",
    "Search by name or e-mail": "Rechercher par nom ou e-mail",
    "2FA status": "Statut de la 2FA",
    "All statuses": "Tous les statuts",
    "Name": "Nom",
    "E-mail": "E-mail",
    "Role": "Rôle",
    "Admin": "Admin",
    "User": "Utilisateur",
    "No user matches.": "Aucun utilisateur ne correspond.",
    "Previous": "Précédent",
    "Next": "Suivant",
    # Recovery QR codes (idp/admin/recovery_qr.py, issue 7)
    "1 hour": "1 heure",
    "24 hours": "24 heures",
    "3 days": "3 jours",
    "7 days": "7 jours",
    "Valid for": "Valable",
    "Issue recovery QR code": "Émettre un code QR de récupération",
    "Choose a shorter validity.": "Choisissez une durée de validité plus courte.",
    "The recovery QR code was revoked.": "Le code QR de récupération a été révoqué.",
    "Recovery QR code": "Code QR de récupération",
    "Recovery QR code for %(email)s": "Code QR de récupération pour %(email)s",
    "Give this to %(email)s now": "Remettez-le à %(email)s maintenant",
    "It is shown only once and works once, until %(when)s. Hand it over in person or over a channel you trust.":
        "Il n'est affiché qu'une fois et ne fonctionne qu'une fois, jusqu'au %(when)s. Remettez-le en main "
        "propre ou par un canal de confiance.",
    "On a new phone, the authenticator app scans it to get push sign-in back. At the login, the user can instead type this code under “I can't use my usual method”:":
        "Sur un nouveau téléphone, l'application d'authentification le scanne pour retrouver la connexion par "
        "notification. À la connexion, l'utilisateur peut aussi saisir ce code sous « Je ne peux pas utiliser "
        "ma méthode habituelle » :",
    "Download as PNG": "Télécharger en PNG",
    "For a user who lost their phone or every second factor: one use, then they set up a new factor or register their new phone. Issuing is recorded in the audit log.":
        "Pour un utilisateur qui a perdu son téléphone ou tous ses seconds facteurs : un seul usage, puis il "
        "active un nouveau facteur ou enregistre son nouveau téléphone. L'émission est inscrite au journal d'audit.",
    "Codes that still work": "Codes encore valables",
    "Issued": "Émis",
    "By": "Par",
    "Expires": "Expire",
    "None.": "Aucun.",
}


def main() -> int:
    pot = HERE / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F",
                    str(HERE.parent / "babel.cfg"), "-k", "_l", "--no-location", "--omit-header",
                    "-o", str(pot), "."], cwd=ROOT, check=True)
    with pot.open("rb") as handle:
        catalog = read_po(handle, locale="fr")
    missing = []
    for message in catalog:
        if not message.id:
            continue
        if message.id in FRENCH:
            message.string = FRENCH[message.id]
        else:
            missing.append(message.id)
    folder = HERE / "fr" / "LC_MESSAGES"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "messages.po").open("wb") as handle:
        write_po(handle, catalog, width=100, omit_header=False)
    with (folder / "messages.mo").open("wb") as handle:
        write_mo(handle, catalog)
    for text in missing:
        print(f"untranslated: {text!r}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
