package mqtt

import (
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// PrometheusMetrics implements Metrics with Prometheus collectors.
type PrometheusMetrics struct {
	open     prometheus.Gauge
	refused  *prometheus.CounterVec
	publish  *prometheus.CounterVec
	duration prometheus.Histogram
}

// NewPrometheusMetrics creates the collectors and registers them with reg.
func NewPrometheusMetrics(reg prometheus.Registerer) (*PrometheusMetrics, error) {
	m := &PrometheusMetrics{
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tend_mqtt_connections_open",
			Help: "MQTT connections past CONNECT.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tend_mqtt_connect_refused_total",
			Help: "CONNECTs refused, by CONNACK return/reason code.",
		}, []string{"code"}),
		publish: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tend_mqtt_publish_total",
			Help: "PUBLISH packets handled, by QoS and result (ok, rejected, error).",
		}, []string{"qos", "result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tend_mqtt_publish_handle_seconds",
			Help:    "Time from PUBLISH received to durable (handler return).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
	}
	for _, c := range []prometheus.Collector{m.open, m.refused, m.publish, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *PrometheusMetrics) ConnectionOpened() { m.open.Inc() }
func (m *PrometheusMetrics) ConnectionClosed() { m.open.Dec() }

func (m *PrometheusMetrics) ConnectRefused(code byte) {
	m.refused.WithLabelValues(strconv.Itoa(int(code))).Inc()
}

func (m *PrometheusMetrics) PublishHandled(qos byte, d time.Duration, err error) {
	result := "ok"
	var rej *RejectError
	switch {
	case errors.As(err, &rej):
		result = "rejected"
	case err != nil:
		result = "error"
	}
	m.publish.WithLabelValues(strconv.Itoa(int(qos)), result).Inc()
	m.duration.Observe(d.Seconds())
}
