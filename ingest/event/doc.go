// Package event owns the usage event and its versioned binary encoding.
package event
