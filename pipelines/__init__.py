"""sixtyfour-sync: copy Sixtyfour workflow runs into a warehouse with dlt."""
