// Package catalog owns tenants, services, metrics, plans, applications and keys: the in-memory projection of the config log, the file loader and the validator.
package catalog
