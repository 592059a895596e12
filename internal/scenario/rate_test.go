package scenario

import "testing"

func TestShareSumsToRate(t *testing.T) {
	for _, m := range []int{1, 3, 52, 300} {
		sum := 0
		for k := 0; k < m; k++ {
			sum += Share(200, k, m)
		}
		if sum != 200 {
			t.Fatalf("m=%d: %d", m, sum)
		}
	}
}
