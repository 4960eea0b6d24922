"""The REST API of the 2016 contract, on aiohttp."""
