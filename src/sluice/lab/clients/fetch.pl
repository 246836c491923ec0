#!/usr/bin/perl
# Lab HTTPS client on Perl LWP::UserAgent + IO::Socket::SSL (Net::SSLeay, OpenSSL):
# perl fetch.pl --cafile CA [--gap S] URL OUT [URL OUT ...]
use strict;
use warnings;
use LWP::UserAgent;
use Time::HiRes qw(sleep);

my ($ca, $gap, @jobs) = (undef, 0);
while (@ARGV) {
    my $arg = shift @ARGV;
    if ($arg eq '--cafile') { $ca = shift @ARGV }
    elsif ($arg eq '--gap') { $gap = shift @ARGV }
    else { push @jobs, [$arg, shift @ARGV] }
}
my $ua = LWP::UserAgent->new(
    keep_alive => 4,
    timeout    => 20,
    ssl_opts   => { SSL_ca_file => $ca, verify_hostname => 1 },
);
my ($failed, $i) = (0, 0);
for my $job (@jobs) {
    sleep($gap) if $i++;
    my $r = $ua->get($job->[0], ':content_file' => $job->[1]);
    unless ($r->is_success) {
        $failed++;
        print STDERR "$job->[0]: ", $r->status_line, "\n";
    }
}
exit($failed ? 1 : 0);
