//go:build tools

// Package tools pins MeshSync, the cluster-discovery agent that the operator deploys.
package tools

import (
	_ "github.com/meshery/meshsync"
)
