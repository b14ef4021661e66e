package dev.freenet.bench.app;

import android.app.Activity;
import android.content.Intent;
import android.os.Bundle;
import android.view.View;
import android.widget.ArrayAdapter;
import android.widget.Button;
import android.widget.EditText;
import android.widget.ListView;
import android.widget.ProgressBar;
import android.widget.TextView;
import dev.freenet.bench.R;
import java.util.List;

/**
 * The one screen: settings (aggregator URL, device token, bundle, run counts), Start / Stop /
 * Upload pending, progress, and one line per report. Intent extras fill the settings so the
 * app can be driven over adb (see android_app/README.md).
 */
public class MainActivity extends Activity implements BenchController.Listener {
  private EditText server;
  private EditText token;
  private EditText bundle;
  private EditText filter;
  private EditText runs;
  private EditText warmups;
  private TextView status;
  private ProgressBar progress;
  private Button start;
  private Button stop;
  private ArrayAdapter<String> adapter;
  private BenchController controller;

  @Override
  protected void onCreate(Bundle savedInstanceState) {
    super.onCreate(savedInstanceState);
    setContentView(R.layout.activity_main);
    server = (EditText) findViewById(R.id.server);
    token = (EditText) findViewById(R.id.token);
    bundle = (EditText) findViewById(R.id.bundle);
    filter = (EditText) findViewById(R.id.filter);
    runs = (EditText) findViewById(R.id.runs);
    warmups = (EditText) findViewById(R.id.warmups);
    status = (TextView) findViewById(R.id.status);
    progress = (ProgressBar) findViewById(R.id.progress);
    start = (Button) findViewById(R.id.start);
    stop = (Button) findViewById(R.id.stop);
    adapter = new ArrayAdapter<String>(this, android.R.layout.simple_list_item_1);
    ((ListView) findViewById(R.id.results)).setAdapter(adapter);

    controller = BenchController.get(this);
    Settings s = Settings.load(this);
    boolean autostart = s.applyExtras(getIntent());
    s.save(this);
    show(s);

    start.setOnClickListener(
        new View.OnClickListener() {
          @Override
          public void onClick(View v) {
            controller.start(saveFields());
          }
        });
    stop.setOnClickListener(
        new View.OnClickListener() {
          @Override
          public void onClick(View v) {
            controller.stop();
          }
        });
    findViewById(R.id.upload)
        .setOnClickListener(
            new View.OnClickListener() {
              @Override
              public void onClick(View v) {
                controller.retryUploads(saveFields());
              }
            });

    controller.attach(this);
    controller.startUploader(s);
    if (autostart && savedInstanceState == null) {
      controller.start(s);
    }
    onStateChanged();
  }

  @Override
  protected void onNewIntent(Intent intent) {
    super.onNewIntent(intent);
    setIntent(intent);
    Settings s = saveFields();
    boolean autostart = s.applyExtras(intent);
    s.save(this);
    show(s);
    if (autostart) {
      controller.start(s);
    }
  }

  @Override
  protected void onDestroy() {
    controller.detach(this);
    super.onDestroy();
  }

  @Override
  public void onStateChanged() {
    boolean running = controller.running();
    start.setEnabled(!running);
    stop.setEnabled(running);
    progress.setVisibility(running ? View.VISIBLE : View.INVISIBLE);
    int pending = controller.pending();
    String text = controller.status();
    status.setText(
        (text.isEmpty() ? getString(R.string.idle) : text)
            + (pending > 0 ? "\n" + pending + " report(s) waiting for upload" : ""));
    List<String> lines = controller.results();
    adapter.clear();
    adapter.addAll(lines);
  }

  private void show(Settings s) {
    server.setText(s.server);
    token.setText(s.token);
    bundle.setText(s.bundle);
    filter.setText(s.filter);
    runs.setText(String.valueOf(s.runs));
    warmups.setText(String.valueOf(s.warmups));
  }

  private Settings saveFields() {
    Settings s = Settings.load(this);
    s.server = server.getText().toString().trim();
    s.token = token.getText().toString().trim();
    s.bundle = bundle.getText().toString().trim();
    s.filter = filter.getText().toString().trim();
    s.runs = parse(runs, s.runs);
    s.warmups = parse(warmups, s.warmups);
    s.save(this);
    return s;
  }

  private static int parse(EditText field, int fallback) {
    try {
      return Integer.parseInt(field.getText().toString().trim());
    } catch (NumberFormatException e) {
      return fallback;
    }
  }
}
