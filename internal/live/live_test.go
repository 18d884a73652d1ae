package live

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

func drain(s *Subscription) []Event {
	var out []Event
	for ev := range s.C() {
		out = append(out, ev)
	}
	return out
}

func TestFilterAndOrder(t *testing.T) {
	h := &Hub{Buffer: 8}
	all := h.Subscribe(nil)
	p1 := h.Subscribe(func(ev Event) bool { return ev.Patient == "p1" })
	alarms := h.Subscribe(func(ev Event) bool { return ev.Type == TypeAlarm })
	evs := []Event{
		{Type: TypeReading, Patient: "p1", Data: []byte(`{"n":1}`)},
		{Type: TypeReading, Patient: "p2", Data: []byte(`{"n":2}`)},
		{Type: TypeAlarm, Patient: "p1", Data: []byte(`{"n":3}`)},
		{Type: TypeAlarm, Patient: "", Data: []byte(`{"n":4}`)},
	}
	for _, ev := range evs {
		h.Publish(ev)
	}
	h.Close()
	tests := []struct {
		name string
		sub  *Subscription
		want []string
	}{
		{"all", all, []string{`{"n":1}`, `{"n":2}`, `{"n":3}`, `{"n":4}`}},
		{"patient p1", p1, []string{`{"n":1}`, `{"n":3}`}},
		{"alarms", alarms, []string{`{"n":3}`, `{"n":4}`}},
	}
	for _, tc := range tests {
		got := drain(tc.sub)
		var data []string
		for _, ev := range got {
			data = append(data, string(ev.Data))
		}
		if fmt.Sprint(data) != fmt.Sprint(tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, data, tc.want)
		}
		if !errors.Is(tc.sub.Err(), ErrHubClosed) {
			t.Errorf("%s: err %v, want ErrHubClosed", tc.name, tc.sub.Err())
		}
	}
}

func TestSlowSubscriberIsClosedNotSkipped(t *testing.T) {
	h := &Hub{Buffer: 3}
	slow := h.Subscribe(nil)
	fast := h.Subscribe(nil)
	var fastGot []Event
	for i := range 5 {
		h.Publish(Event{Type: TypeReading, Data: []byte{byte('0' + i)}})
		fastGot = append(fastGot, <-fast.C())
	}
	got := drain(slow)
	if len(got) != 3 || string(got[0].Data) != "0" || string(got[2].Data) != "2" {
		t.Fatalf("slow subscriber got %d events %+v, want the first 3 then the end", len(got), got)
	}
	if !errors.Is(slow.Err(), ErrSlow) {
		t.Fatalf("slow subscriber err %v, want ErrSlow", slow.Err())
	}
	if len(fastGot) != 5 || fast.Err() != nil {
		t.Fatalf("fast subscriber: %d events, err %v", len(fastGot), fast.Err())
	}
	if h.Len() != 1 {
		t.Fatalf("hub still holds %d subscriptions, want 1", h.Len())
	}
}

func TestCloseSubscription(t *testing.T) {
	h := &Hub{}
	s := h.Subscribe(nil)
	if s.Err() != nil {
		t.Fatalf("open subscription has err %v", s.Err())
	}
	s.Close()
	s.Close() // idempotent
	if _, ok := <-s.C(); ok {
		t.Fatal("channel open after Close")
	}
	if !errors.Is(s.Err(), ErrClosed) || h.Len() != 0 {
		t.Fatalf("after Close: err %v, %d subscriptions", s.Err(), h.Len())
	}
	h.Publish(Event{Type: TypeAlarm}) // must not panic on a closed channel
	h.Close()
	late := h.Subscribe(nil)
	if _, ok := <-late.C(); ok || !errors.Is(late.Err(), ErrHubClosed) {
		t.Fatalf("subscription after hub Close: err %v", late.Err())
	}
	late.Close() // closing an ended subscription does nothing
}

// TestConcurrent runs publishers, subscribers that come and go, and slow
// consumers at once; the race detector checks the locking and every
// subscriber must see its events in publication order per publisher.
func TestConcurrent(t *testing.T) {
	h := &Hub{Buffer: 16}
	const publishers, perPublisher = 4, 500
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := h.Subscribe(func(ev Event) bool { return c%2 == 0 || ev.Patient == "p1" })
			last := map[string]int{}
			n := 0
			for ev := range s.C() {
				seq := int(ev.Data[1])<<8 | int(ev.Data[2])
				if prev, ok := last[string(ev.Data[:1])+ev.Patient]; ok && seq <= prev {
					t.Errorf("subscriber %d: out of order: %d after %d", c, seq, prev)
				}
				last[string(ev.Data[:1])+ev.Patient] = seq
				n++
				if c == 7 && n == 10 {
					s.Close()
				}
			}
			if s.Err() == nil {
				t.Errorf("subscriber %d: channel closed without a reason", c)
			}
		}()
	}
	var pub sync.WaitGroup
	for p := range publishers {
		pub.Add(1)
		go func() {
			defer pub.Done()
			for i := range perPublisher {
				patient := "p1"
				if i%3 == 0 {
					patient = "p2"
				}
				h.Publish(Event{Type: TypeReading, Patient: patient, Data: []byte{byte(p), byte(i >> 8), byte(i)}})
			}
		}()
	}
	pub.Wait()
	h.Close()
	wg.Wait()
}

// BenchmarkPublish100Subscribers measures one Publish fanned out to 100
// subscribers (half of them filtered by patient). The buffers are drained
// with the timer stopped, so the figure is the publisher's cost alone and
// no subscriber is dropped.
func BenchmarkPublish100Subscribers(b *testing.B) {
	const buffer = 1024
	h := &Hub{Buffer: buffer}
	subs := make([]*Subscription, 100)
	for i := range subs {
		subs[i] = h.Subscribe(func(ev Event) bool { return i%2 == 0 || ev.Patient == "p1" })
	}
	ev := Event{Type: TypeReading, Patient: "p1", Data: []byte(`{"code":"8867-4","value":72}`)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%buffer == buffer-1 {
			b.StopTimer()
			for _, s := range subs {
				for len(s.C()) > 0 {
					<-s.C()
				}
			}
			b.StartTimer()
		}
		h.Publish(ev)
	}
	b.StopTimer()
	if h.Len() != len(subs) {
		b.Fatalf("%d subscribers were dropped", len(subs)-h.Len())
	}
}

// Wants lets a publisher skip encoding events of a type nobody takes.
func TestWantsAndTypes(t *testing.T) {
	var h Hub
	if h.Wants(TypeReading) {
		t.Fatal("an empty hub wants readings")
	}
	alarms := h.SubscribeTypes([]string{TypeAlarm}, nil)
	if h.Wants(TypeReading) || !h.Wants(TypeAlarm) {
		t.Fatalf("with an alarm-only subscriber: wants reading %v, alarm %v", h.Wants(TypeReading), h.Wants(TypeAlarm))
	}
	h.Publish(Event{Type: TypeReading, Data: []byte(`{}`)})
	h.Publish(Event{Type: TypeAlarm, Data: []byte(`{"a":1}`)})
	if ev := <-alarms.C(); ev.Type != TypeAlarm {
		t.Fatalf("alarm-only subscriber got %q", ev.Type)
	}
	all := h.Subscribe(nil)
	if !h.Wants(TypeReading) {
		t.Fatal("a subscriber of every type does not count")
	}
	all.Close()
	alarms.Close()
	if h.Wants(TypeAlarm) {
		t.Fatal("closed subscriptions still count")
	}
}
