"""Contact discovery, the optional contacts stage (``--contacts``, ``contacts.enabled``).

- :mod:`enrich.contacts.find`: a page's emails, phone numbers (E.164) and social profiles, and its links to the
  site's contact pages; pure, every step capped.
- :mod:`enrich.contacts.social`: which links are social profiles.
- :mod:`enrich.contacts.stage`: :class:`ContactStage`, which adds the contacts of each site's contact, about and
  team pages, fetched once per site through a :data:`ContactFetch` the engine supplies.
"""

from __future__ import annotations

from enrich.contacts.find import PageContacts, find_contacts, scan_page
from enrich.contacts.social import social_profile
from enrich.contacts.stage import ContactFetch, ContactStage

__all__ = ["ContactFetch", "ContactStage", "PageContacts", "find_contacts", "scan_page", "social_profile"]
