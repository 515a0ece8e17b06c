"""Test sites that the crawler's tests crawl, all served on loopback addresses.

The machine that runs the tests has no internet access, and tests must not depend
on anyone else's servers, so every site a test crawls is started here:
:mod:`tests.sites.hostile` is an aiohttp app full of traps, and
:mod:`tests.sites.nginx` runs Debian's nginx over a folder of real pages.
"""
