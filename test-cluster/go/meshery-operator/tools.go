//go:build tools

// Package tools pins the Go Meshery Operator that the migration tests run beside ours.
package tools

import (
	_ "github.com/meshery/meshery-operator/cmd"
)
