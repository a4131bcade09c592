package gateway

import "testing"

func TestReleaseAtLeast(t *testing.T) {
	for _, c := range []struct {
		release string
		want    bool
	}{
		{"6.18.44-fc-v782", true},
		{"6.1.0-18-amd64", true},
		{"4.18.0-553.el8_10.x86_64", true},
		{"4.18-rc1", true},
		{"4.17.19", false},
		{"3.10.0-1160.el7.x86_64", false},
		{"5", false},
		{"", false},
	} {
		if got := releaseAtLeast(c.release, 4, 18); got != c.want {
			t.Errorf("releaseAtLeast(%q, 4, 18) = %v, want %v", c.release, got, c.want)
		}
	}
}
