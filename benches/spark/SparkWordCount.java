// The seed's WordCount and UpdateStateByKeyWordCount on Spark itself, for the side-by-side search of
// `cargo bench --bench word_count -- --only sustained` (see the performance chapter for the commands).
// Arguments: host port stateless|stateful batches. Prints `batch <records> <processing ms>
// <scheduling delay ms>` per completed batch, as the streamc side does, and exits after `batches`.

import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import org.apache.spark.SparkConf;
import org.apache.spark.api.java.Optional;
import org.apache.spark.streaming.Durations;
import org.apache.spark.streaming.api.java.JavaDStream;
import org.apache.spark.streaming.api.java.JavaPairDStream;
import org.apache.spark.streaming.api.java.JavaReceiverInputDStream;
import org.apache.spark.streaming.api.java.JavaStreamingContext;
import org.apache.spark.streaming.scheduler.BatchInfo;
import org.apache.spark.streaming.scheduler.StreamingListener;
import org.apache.spark.streaming.scheduler.StreamingListenerBatchCompleted;
import scala.Tuple2;

public class SparkWordCount {
    public static void main(String[] args) throws Exception {
        String host = args[0];
        int port = Integer.parseInt(args[1]);
        boolean stateful = args[2].equals("stateful");
        int batches = Integer.parseInt(args[3]);
        SparkConf conf = new SparkConf().setAppName("WordCount").setMaster("local[2]");
        JavaStreamingContext jssc = new JavaStreamingContext(conf, Durations.seconds(1));
        jssc.sparkContext().setLogLevel("ERROR");
        CountDownLatch done = new CountDownLatch(batches);
        jssc.addStreamingListener(new StreamingListener() {
            @Override
            public void onBatchCompleted(StreamingListenerBatchCompleted completed) {
                BatchInfo info = completed.batchInfo();
                long processing = (Long) info.processingDelay().get();
                long scheduling = (Long) info.schedulingDelay().get();
                System.out.println("batch " + info.numRecords() + " " + processing + " " + scheduling);
                System.out.flush();
                done.countDown();
            }
        });
        JavaReceiverInputDStream<String> lines = jssc.socketTextStream(host, port);
        JavaDStream<String> words = lines.flatMap(line -> Arrays.asList(line.split(" ")).iterator());
        JavaPairDStream<String, Integer> pairs = words.mapToPair(word -> new Tuple2<>(word, 1));
        JavaPairDStream<String, Integer> counts;
        if (stateful) {
            jssc.checkpoint(System.getProperty("java.io.tmpdir") + "/spark-wordcount-checkpoint-" + ProcessHandle.current().pid());
            counts = pairs.updateStateByKey((List<Integer> values, Optional<Integer> state) -> {
                int sum = state.orElse(0);
                for (Integer v : values) {
                    sum += v;
                }
                return Optional.of(sum);
            });
        } else {
            counts = pairs.reduceByKey((a, b) -> a + b);
        }
        counts.print();
        jssc.start();
        done.await();
        System.exit(0);
    }
}
