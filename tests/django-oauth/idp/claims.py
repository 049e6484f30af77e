"""The user's claims, in the ID token and at the userinfo endpoint, by scope (profile, email).

get_additional_claims takes no request, so that discovery lists these claims (DOT's documented
form: each value is computed from the request when a token is issued).
"""

from oauth2_provider.oauth2_validators import OAuth2Validator


class Validator(OAuth2Validator):
    def get_additional_claims(self):
        return {
            "preferred_username": lambda request: request.user.get_username(),
            "name": lambda request: request.user.get_full_name(),
            "given_name": lambda request: request.user.first_name,
            "family_name": lambda request: request.user.last_name,
            "email": lambda request: request.user.email,
        }
