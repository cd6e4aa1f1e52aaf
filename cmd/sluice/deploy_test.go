package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sluice-dev/sluice/ingest/region"
)

// serveFlags returns the flags and environment variables `sluice serve -h`
// lists.
func serveFlags(t *testing.T) (flags, env map[string]bool) {
	t.Helper()
	var out, errs bytes.Buffer
	run(context.Background(), []string{"serve", "-h"}, &out, &errs)
	flags, env = map[string]bool{}, map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z-]+)\s+\((SLUICE_[A-Z_]+)`).FindAllStringSubmatch(errs.String(), -1) {
		flags[m[1]], env[m[2]] = true, true
	}
	if !flags["kafka"] || !env["SLUICE_CLICKHOUSE"] {
		t.Fatalf("could not read the flags from `serve -h`:\n%s", errs.String())
	}
	return flags, env
}

// checkServe checks a sluice container's arguments and environment names
// against the real flags.
func checkServe(t *testing.T, where string, args []string, envNames []string, flags, env map[string]bool) {
	t.Helper()
	if len(args) == 0 || args[0] != "serve" {
		t.Errorf("%s: arguments %q do not start with serve", where, args)
	}
	for _, a := range args {
		if name, ok := strings.CutPrefix(a, "--"); ok {
			name, _, _ = strings.Cut(name, "=")
			if !flags[name] {
				t.Errorf("%s: sluice serve has no flag --%s", where, name)
			}
		}
	}
	for _, e := range envNames {
		if strings.HasPrefix(e, "SLUICE_") && !env[e] {
			t.Errorf("%s: sluice serve reads no variable %s", where, e)
		}
	}
}

// validateConfig runs `sluice config validate` on a configuration.
func validateConfig(t *testing.T, where, doc string) {
	t.Helper()
	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"config", "validate", writeConfig(t, doc)}, &out, &errs); code != 0 {
		t.Errorf("%s: configuration invalid: %s", where, errs.String())
	}
}

// TestDeployCompose: deploy/compose.yaml (one region) and
// deploy/compose.regions.yaml (two) run sluice with flags and variables that
// exist, and mount a valid configuration.
func TestDeployCompose(t *testing.T) {
	for _, file := range []string{"compose.yaml", "compose.regions.yaml"} {
		t.Run(file, func(t *testing.T) { testDeployCompose(t, file) })
	}
}

func testDeployCompose(t *testing.T, file string) {
	flags, env := serveFlags(t)
	b, err := os.ReadFile("../../deploy/" + file)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Build       any               `yaml:"build"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Volumes     []string          `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	roles := map[string]bool{}
	for name, svc := range doc.Services {
		if svc.Build == nil {
			continue // kafka, clickhouse
		}
		var names []string
		for k := range svc.Environment {
			names = append(names, k)
		}
		checkServe(t, "compose service "+name, svc.Command, names, flags, env)
		if i := slices.Index(svc.Command, "--roles"); i >= 0 && i+1 < len(svc.Command) {
			for _, r := range strings.Split(svc.Command[i+1], ",") {
				roles[r] = true
			}
		}
		for _, v := range svc.Volumes {
			src, dst, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") && strings.HasSuffix(src, ".yaml") {
				cfg, err := os.ReadFile(filepath.Join("../../deploy", src))
				if err != nil {
					t.Fatalf("compose service %s mounts %s: %v", name, src, err)
				}
				if dst, _, _ = strings.Cut(dst, ":"); svc.Environment["SLUICE_CONFIG"] != dst {
					t.Errorf("compose service %s mounts %s at %s but SLUICE_CONFIG is %q", name, src, dst, svc.Environment["SLUICE_CONFIG"])
				}
				validateConfig(t, src, string(cfg))
			}
		}
	}
	if !roles[roleAPI] || !roles[roleRollup] || !roles[roleQuery] {
		t.Errorf("%s runs roles %v, want api, rollup and query", file, roles)
	}
}

// TestDeployKubernetesRegions: the two regions' overlays of the Kubernetes
// manifests set variables sluice reads, and each names the other as its peer.
func TestDeployKubernetesRegions(t *testing.T) {
	_, env := serveFlags(t)
	peersOf := map[string]string{}
	for _, r := range []string{"east", "west"} {
		dir := "../../deploy/k8s/regions/" + r
		b, err := os.ReadFile(dir + "/kustomization.yaml")
		if err != nil {
			t.Fatal(err)
		}
		var k struct {
			Resources []string `yaml:"resources"`
			Patches   []struct {
				Patch string `yaml:"patch"`
			} `yaml:"patches"`
		}
		if err := yaml.Unmarshal(b, &k); err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		for _, res := range k.Resources {
			if _, err := os.Stat(filepath.Join(dir, res)); err != nil {
				t.Errorf("%s: resource %s: %v", r, res, err)
			}
		}
		if len(k.Patches) != 1 {
			t.Fatalf("%s: %d patches, want the ConfigMap's", r, len(k.Patches))
		}
		var cm struct {
			Data map[string]string `yaml:"data"`
		}
		if err := yaml.Unmarshal([]byte(k.Patches[0].Patch), &cm); err != nil {
			t.Fatalf("%s: patch: %v", r, err)
		}
		for name := range cm.Data {
			if !env[name] {
				t.Errorf("%s: sluice serve reads no variable %s", r, name)
			}
		}
		if cm.Data["SLUICE_REGION"] != r {
			t.Errorf("%s: SLUICE_REGION %q", r, cm.Data["SLUICE_REGION"])
		}
		peers, err := region.ParsePeers([]string{cm.Data["SLUICE_PEER_REGION"]}, r)
		if err != nil || len(peers) != 1 {
			t.Fatalf("%s: SLUICE_PEER_REGION %q: %v", r, cm.Data["SLUICE_PEER_REGION"], err)
		}
		peersOf[r] = peers[0].Name
	}
	if peersOf["east"] != "west" || peersOf["west"] != "east" {
		t.Errorf("the regions' peers: %v, want each other", peersOf)
	}
}

// TestDeployKubernetes: the manifests run sluice with flags and variables
// that exist, their selectors select their pods, probes and services name
// ports the containers have, and the configuration in the Secret is valid.
func TestDeployKubernetes(t *testing.T) {
	flags, env := serveFlags(t)
	f, err := os.Open("../../deploy/k8s/sluice.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type probe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"`
		} `yaml:"httpGet"`
	}
	type object struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		Data       map[string]string `yaml:"data"`
		StringData map[string]string `yaml:"stringData"`
		Spec       struct {
			Selector any `yaml:"selector"` // a label map (Service) or {matchLabels} (workloads)
			Ports    []struct {
				TargetPort string `yaml:"targetPort"`
			} `yaml:"ports"`
			Template struct {
				Metadata struct {
					Labels map[string]string `yaml:"labels"`
				} `yaml:"metadata"`
				Spec struct {
					Containers []struct {
						Image   string   `yaml:"image"`
						Args    []string `yaml:"args"`
						EnvFrom []struct {
							ConfigMapRef struct {
								Name string `yaml:"name"`
							} `yaml:"configMapRef"`
						} `yaml:"envFrom"`
						Env []struct {
							Name string `yaml:"name"`
						} `yaml:"env"`
						Ports []struct {
							Name string `yaml:"name"`
						} `yaml:"ports"`
						ReadinessProbe *probe `yaml:"readinessProbe"`
						LivenessProbe  *probe `yaml:"livenessProbe"`
						StartupProbe   *probe `yaml:"startupProbe"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	var objs []object
	dec := yaml.NewDecoder(f)
	for {
		var o object
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("k8s/sluice.yaml document %d: %v", len(objs)+1, err)
		}
		objs = append(objs, o)
	}
	configMaps := map[string]map[string]string{}
	for _, o := range objs {
		switch o.Kind {
		case "ConfigMap":
			configMaps[o.Metadata.Name] = o.Data
		case "Secret":
			if doc, ok := o.StringData["sluice.yaml"]; ok {
				validateConfig(t, "Secret "+o.Metadata.Name, doc)
			}
		}
	}
	matches := func(sel, labels map[string]string) bool {
		for k, v := range sel {
			if labels[k] != v {
				return false
			}
		}
		return len(sel) > 0
	}
	podPorts := map[string]bool{}
	var podLabels []map[string]string
	workloads := 0
	for _, o := range objs {
		if o.Kind != "StatefulSet" && o.Kind != "Deployment" {
			continue
		}
		workloads++
		where := o.Kind + " " + o.Metadata.Name
		var sel struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		}
		if b, err := yaml.Marshal(o.Spec.Selector); err != nil || yaml.Unmarshal(b, &sel) != nil || !matches(sel.MatchLabels, o.Spec.Template.Metadata.Labels) {
			t.Errorf("%s: selector %v does not select its pods %v", where, o.Spec.Selector, o.Spec.Template.Metadata.Labels)
		}
		podLabels = append(podLabels, o.Spec.Template.Metadata.Labels)
		for _, c := range o.Spec.Template.Spec.Containers {
			var names []string
			for _, ef := range c.EnvFrom {
				cm, ok := configMaps[ef.ConfigMapRef.Name]
				if !ok {
					t.Errorf("%s: envFrom names ConfigMap %q, not in the file", where, ef.ConfigMapRef.Name)
				}
				for k := range cm {
					names = append(names, k)
				}
			}
			for _, e := range c.Env {
				names = append(names, e.Name)
			}
			checkServe(t, where, c.Args, names, flags, env)
			ports := map[string]bool{}
			for _, p := range c.Ports {
				ports[p.Name], podPorts[p.Name] = true, true
			}
			for _, p := range []*probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
				if p == nil {
					continue
				}
				if !ports[p.HTTPGet.Port] || (p.HTTPGet.Path != "/status" && p.HTTPGet.Path != "/health") {
					t.Errorf("%s: probe %s on port %q: want /status or /health on a port of the container", where, p.HTTPGet.Path, p.HTTPGet.Port)
				}
			}
		}
	}
	if workloads != 3 {
		t.Errorf("%d workloads, want the api, rollup and query ones", workloads)
	}
	for _, o := range objs {
		if o.Kind != "Service" {
			continue
		}
		var sel map[string]string
		if b, err := yaml.Marshal(o.Spec.Selector); err != nil || yaml.Unmarshal(b, &sel) != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(podLabels, func(l map[string]string) bool { return matches(sel, l) }) {
			t.Errorf("Service %s selects no pods of the file: %v", o.Metadata.Name, sel)
		}
		for _, p := range o.Spec.Ports {
			if !podPorts[p.TargetPort] {
				t.Errorf("Service %s targets port %q, which no container names", o.Metadata.Name, p.TargetPort)
			}
		}
	}
}

// TestDeployDockerfile: the image's environment names variables sluice reads.
func TestDeployDockerfile(t *testing.T) {
	_, env := serveFlags(t)
	b, err := os.ReadFile("../../deploy/docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	found := regexp.MustCompile(`(SLUICE_[A-Z_]+)=`).FindAllStringSubmatch(string(b), -1)
	if len(found) == 0 {
		t.Fatal("no SLUICE_ variables in the Dockerfile")
	}
	for _, m := range found {
		if !env[m[1]] {
			t.Errorf("Dockerfile sets %s, which sluice serve does not read", m[1])
		}
	}
	if !strings.Contains(string(b), "./cmd/sluice") {
		t.Error("Dockerfile does not build ./cmd/sluice")
	}
}
