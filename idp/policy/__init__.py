"""Who must use a second factor, and where each user stands.

Modules (import them by name; this package re-exports nothing, so that
`from idp.policy import decide` is the decide *module*):

* `idp.policy.decide`   `decide(...)`: what a login must still do; `can_remove_factor`,
                        `refresh_allowed`; the acr/amr vocabulary.
* `idp.policy.status`   the four statuses as a Python predicate and the same SQL CASE;
                        `distribution`, `impact_of_requiring_all`, `is_required`.
* `idp.policy.settings` the writes (org/user requirement, allowed factors, grace),
                        each with exactly one audit event; `Actor`, `PolicyError`.
* `idp.policy.cli`      the `idp policy ...` commands.
"""
