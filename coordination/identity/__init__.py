"""Identity resolution: normalisation, company resolution, survivorship, contact persons."""
