package dev.moecluster.coordinator;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.hazelcast.core.HazelcastInstance;
import com.hazelcast.core.HazelcastInstanceAware;
import com.hazelcast.cluster.Member;
import com.hazelcast.map.EntryProcessor;
import java.util.Iterator;
import java.util.Map;
import java.util.Set;
import java.util.UUID;

/**
 * The leader's term: a number that grows with every change of leader, kept in one shared record and
 * granted by the member that owns the record's partition, never by the claimant itself. The owner
 * grants it only to the member it sees as the oldest of a majority, so a coordinator that the others
 * have expelled (partitioned, or frozen past the member timeout) cannot lead on its stale view of the
 * cluster: its claim goes to a member that no longer counts it, and every tick claims again before
 * the leader writes anything.
 */
final class LeaderTerm {
    /** The shared map the record lives in (split-brain protected as every {@code moe.*} map). */
    static final String MAP = "moe.leader";
    static final String KEY = "term";

    private LeaderTerm() {}

    /**
     * Claims the term for this member: its current term if it holds it already, the next one if it is
     * the oldest member of a majority as the record's owner sees the cluster, else -1.
     *
     * @param highestSeen the highest term this member has read: a record lost with its partition (the
     *     owner and its backup gone at once, or mid-migration) must not hand out a term again
     */
    static long claim(HazelcastInstance hz, int majority, long highestSeen) {
        return hz.<String, String>getMap(MAP).executeOnKey(KEY,
                new Claim(hz.getCluster().getLocalMember().getUuid(), majority, highestSeen));
    }

    /** The term granted last and its holder, or null before the first. */
    static Map.Entry<Long, String> current(HazelcastInstance hz) {
        String json = hz.<String, String>getMap(MAP).get(KEY);
        if (json == null) {
            return null;
        }
        JsonObject o = JsonParser.parseString(json).getAsJsonObject();
        return Map.entry(o.get("term").getAsLong(), o.get("leader").getAsString());
    }

    /** Runs on the partition owner of the term record, with the owner's view of the members. */
    static final class Claim implements EntryProcessor<String, String, Long>, HazelcastInstanceAware {
        private static final long serialVersionUID = 1L;
        private final UUID candidate;
        private final int majority;
        private final long highestSeen;
        private transient HazelcastInstance owner;

        Claim(UUID candidate, int majority, long highestSeen) {
            this.candidate = candidate;
            this.majority = majority;
            this.highestSeen = highestSeen;
        }

        @Override
        public void setHazelcastInstance(HazelcastInstance hazelcastInstance) {
            this.owner = hazelcastInstance;
        }

        @Override
        public Long process(Map.Entry<String, String> entry) {
            Set<Member> members = owner.getCluster().getMembers();
            Iterator<Member> oldest = members.iterator();
            if (members.size() < majority || !oldest.hasNext() || !oldest.next().getUuid().equals(candidate)) {
                return -1L;
            }
            long term = highestSeen;
            if (entry.getValue() != null) {
                JsonObject held = JsonParser.parseString(entry.getValue()).getAsJsonObject();
                long stored = held.get("term").getAsLong();
                if (held.get("leader").getAsString().equals(candidate.toString()) && stored >= highestSeen) {
                    return stored;
                }
                term = Math.max(term, stored);
            }
            JsonObject granted = new JsonObject();
            granted.addProperty("term", term + 1);
            granted.addProperty("leader", candidate.toString());
            entry.setValue(granted.toString());
            return term + 1;
        }
    }
}
